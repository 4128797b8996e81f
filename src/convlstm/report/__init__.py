"""Figures, animations and the self-contained HTML report (the only place matplotlib and imageio are used).

- [`plot_scores_by_lead_time`][convlstm.report.plot_scores_by_lead_time],
  [`plot_frame_strip`][convlstm.report.plot_frame_strip], [`plot_training_curve`][convlstm.report.plot_training_curve]:
  PNG figures.
- [`write_comparison_gif`][convlstm.report.write_comparison_gif], [`first_frame_png`][convlstm.report.first_frame_png]:
  a side-by-side forecast animation and a still of it.
- [`write_report`][convlstm.report.write_report]: one HTML file with the metrics table, figures and animations embedded.
- [`metric_direction`][convlstm.report.metric_direction]: whether lower or higher is better for a metric name.
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
