"""Figures, animations and the self-contained HTML report (the only place matplotlib and imageio are used).

- :func:`plot_scores_by_lead_time`, :func:`plot_frame_strip`, :func:`plot_training_curve`: PNG figures.
- :func:`write_comparison_gif`, :func:`first_frame_png`: a side-by-side forecast animation and a still of it.
- :func:`write_report`: one HTML file with the metrics table, figures and animations embedded.
- :func:`metric_direction`: whether lower or higher is better for a metric name.
"""

from convlstm.report.animation import first_frame_png, write_comparison_gif
from convlstm.report.directions import metric_direction
from convlstm.report.figures import plot_frame_strip, plot_scores_by_lead_time, plot_training_curve
from convlstm.report.html import write_report

__all__ = [
    "first_frame_png",
    "metric_direction",
    "plot_frame_strip",
    "plot_scores_by_lead_time",
    "plot_training_curve",
    "write_comparison_gif",
    "write_report",
]
