"""The xarray and mlcast sources read zarr stores through fsspec URLs: here a store served over HTTP by a server on
127.0.0.1 gives the same items as the same store on disk, and reading a window fetches only its chunks."""

import functools
import http.server
import pickle
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from convlstm.data.formats.mlcast import MlcastSequences
from convlstm.data.formats.xarray_source import XarraySequences, open_lazy
from tests.data.formats.test_mlcast import write_mlcast_store
from tests.data.formats.test_xarray import weather


@dataclass
class Served:
    """A folder served over HTTP, and what the server was asked."""

    url: str
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    record = Served(url="")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def send_head(self) -> Any:
            record.paths.append(self.path)
            record.headers.append(dict(self.headers))
            return super().send_head()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no line per request on stderr

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    record.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def assert_same_items(remote: Any, local: Any) -> None:
    assert len(remote) == len(local)
    for index in (0, len(local) // 2, len(local) - 1):
        a, b = remote[index], local[index]
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


#: zarr warns when it writes consolidated metadata in format 3 (not in that spec yet); over HTTP, which cannot list
#: a folder, the consolidated metadata is what lists the arrays.
V3_CONSOLIDATED = "ignore:Consolidated metadata is currently not part:UserWarning"


@pytest.mark.filterwarnings(V3_CONSOLIDATED)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_source_reads_a_store_over_http(served: Served, tmp_path: Path, zarr_format: int) -> None:
    weather().to_zarr(tmp_path / "era.zarr", zarr_format=zarr_format, consolidated=True)
    options: dict[str, Any] = {"variables": ["t2m", "tp"], "split": "all", "context_frames": 3, "target_frames": 2}
    remote = XarraySequences(
        f"{served.url}/era.zarr", chunk_cache=2, storage_options={"headers": {"X-Test": "yes"}}, **options
    )
    assert_same_items(remote, XarraySequences(tmp_path / "era.zarr", **options))
    assert served.headers and all(h.get("X-Test") == "yes" for h in served.headers)  # the options reach fsspec
    assert_same_items(pickle.loads(pickle.dumps(remote)), remote)  # as a spawned DataLoader worker gets it


@pytest.mark.filterwarnings(V3_CONSOLIDATED)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_mlcast_source_reads_a_store_over_http_lazily(served: Served, tmp_path: Path, zarr_format: int) -> None:
    write_mlcast_store(tmp_path / "radar.zarr", zarr_format=zarr_format)
    local = MlcastSequences(tmp_path / "radar.zarr", "all", context_frames=2, target_frames=2)
    remote = MlcastSequences(f"{served.url}/radar.zarr", "all", context_frames=2, target_frames=2)
    assert_same_items(remote, local)
    assert [r.name for r in remote.recordings] == [r.name for r in local.recordings]

    served.paths.clear()
    lazy = MlcastSequences(
        f"{served.url}/radar.zarr", "all", context_frames=2, target_frames=2, scan_empty_frames=False
    )
    assert not [p for p in served.paths if p.startswith("/radar.zarr/rr/")]  # building it fetched no frame
    lazy[7]
    fetched = sorted(p for p in served.paths if p.startswith("/radar.zarr/rr/") and not p.endswith("json"))
    recording, start = lazy.locate(7)
    first = recording.start + start
    chunk = (lambda t: f"/radar.zarr/rr/{t}.0.0") if zarr_format == 2 else (lambda t: f"/radar.zarr/rr/c/{t}/0/0")
    assert fetched == sorted(chunk(t) for t in range(first, first + 4))


def test_errors_of_urls(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"no zarr store at http://127\.0\.0\.1"):
        open_lazy(f"{served.url}/absent.zarr")
    with pytest.raises(ValueError, match="a URL is read as a zarr store"):
        open_lazy(f"{served.url}/era.nc", engine="netcdf4")
    weather().to_netcdf(tmp_path / "era.nc")
    with pytest.raises(ValueError, match="storage_options apply to fsspec URLs"):
        open_lazy(tmp_path / "era.nc", storage_options={"anon": True})
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    with pytest.raises(ImportError, match="gs:// URLs needs gcsfs, which is not installed: pip install gcsfs"):
        MlcastSequences("gs://bucket/radar.zarr", context_frames=2, target_frames=2)
    with pytest.raises(ValueError, match="fsspec knows no protocol 'nope'"):
        open_lazy("nope://bucket/radar.zarr")
    np.testing.assert_array_equal(open_lazy(f"file://{tmp_path / 'era.nc'}")["t2m"].values, weather()["t2m"].values)
