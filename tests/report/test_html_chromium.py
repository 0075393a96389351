"""report.html as a person sees it: rendered by headless Chromium, offline.

``--dump-dom`` gives the page as Chromium built it; a copy of the page with a short probe script
(the report itself has none) also records the laid-out sizes of the timeline's bars and labels,
so the tests see what is drawn, not only what is written. ``--screenshot`` must give a real image.

Set ``DRDRILL_UPDATE_SCREENSHOT=1`` to refresh docs/report-screenshot.png from the sample run.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from drdrill.report.html import format_measurement, render_html
from drdrill.report.json_report import run_from_json
from drdrill.report.record import RunRecord

ROOT = Path(__file__).parent.parent.parent
SAMPLE = ROOT / "tests" / "data" / "reports" / "sample-failover.json"
SCREENSHOT = ROOT / "docs" / "report-screenshot.png"
WINDOW = (1400, 2200)


def _chromium() -> str | None:
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed "
    "(Debian: apt-get install --no-install-recommends chromium)",
)

#: run in the test's copy of the page only: what the layout made of the timeline
PROBE = """<script>
(function () {
  function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }
  var out = {drills: []};
  document.querySelectorAll("svg.timeline").forEach(function (svg) {
    var labels = Array.prototype.map.call(svg.querySelectorAll("text.evlabel"), box);
    var overlaps = 0;
    for (var i = 0; i < labels.length; i++) for (var j = i + 1; j < labels.length; j++) {
      var a = labels[i], b = labels[j];
      if (a[0] < b[2] - 0.5 && b[0] < a[2] - 0.5 &&
          a[1] < b[3] - 0.5 && b[1] < a[3] - 0.5) overlaps++;
    }
    var frame = box(svg);
    var outside = Array.prototype.filter.call(svg.querySelectorAll("text"), function (t) {
      var r = box(t);
      return r[0] < frame[0] - 0.5 || r[2] > frame[2] + 0.5 ||
             r[1] < frame[1] - 0.5 || r[3] > frame[3] + 0.5;
    }).map(function (t) { return t.textContent; });
    out.drills.push({
      width: frame[2] - frame[0],
      bars: Array.prototype.map.call(svg.querySelectorAll("rect.phase-bar"), function (r) {
        var b = box(r); return [r.parentNode.getAttribute("data-phase"), b[2] - b[0], b[3] - b[1]];
      }),
      outages: svg.querySelectorAll("rect.outage").length,
      labels: labels.length,
      overlaps: overlaps,
      outside: outside
    });
  });
  document.body.setAttribute("data-layout", JSON.stringify(out));
})();
</script>"""


def _run_chromium(
    profile: Path, *args: str, window: tuple[int, int] = WINDOW
) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Dom(HTMLParser):
    """The dumped DOM: text of table rows, the probe's layout and the timeline's elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[tuple[str, str]] = []  # (table class, row text)
        self.layout: dict[str, Any] = {}
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._table = ""
        self._row: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        self.tags.append((tag, named))
        if tag == "table":
            self._table = named.get("class", "")
        elif tag == "tr":
            self._row = []
        elif tag == "body" and "data-layout" in named:
            self.layout = json.loads(named["data-layout"])
        if self._row is not None:
            self._row.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append((self._table, " ".join("".join(self._row).split())))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)

    def table(self, cls: str) -> list[str]:
        return [text for table, text in self.rows if table == cls]


@pytest.fixture(scope="module")
def sample() -> RunRecord:
    return run_from_json(json.loads(SAMPLE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def dom(sample: RunRecord, tmp_path_factory: pytest.TempPathFactory) -> Dom:
    folder = tmp_path_factory.mktemp("dom")
    page = folder / "report.html"
    page.write_text(render_html(sample).replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _run_chromium(folder / "profile", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    return Dom(done.stdout)


def test_chromium_shows_the_objectives_with_their_figures(dom: Dom) -> None:
    """The RTO rows as Chromium built them: target, worst figure, status, error."""
    total = next(r for r in dom.table("objectives") if r.startswith("Total RTO "))
    assert "18 s 6.623 ± 0.025 s (worst of 3) [6.598, 6.649] s ✓ met -26.0 ms" in total
    detection = next(r for r in dom.table("objectives") if r.startswith("Detection "))
    assert "2.4 s 1.353 ± 0.000 s (worst of 3) [1.353, 1.353] s ✓ met" in detection
    database = next(r for r in dom.table("objectives") if r.startswith("Database "))
    assert "1.2 s 0.000 ± 0.000 s (worst of 3) [0.000, 0.000] s ✓ met" in database
    # 7 RTO rows, client downtime (no runbook row), 4 RPO rows, 2 header rows
    assert len(dom.table("objectives")) == 7 + 1 + 4 + 2


def test_chromium_draws_one_bar_a_phase(sample: RunRecord, dom: Dom) -> None:
    """Each drill's SVG has as many laid-out bars as the drill has phases, none of zero size."""
    drills = dom.layout["drills"]
    assert len(drills) == len(sample.drills) == 3
    for laid_out, record in zip(drills, sample.drills, strict=True):
        phases = [r.name for r in record.results if r.start and r.end]
        assert [name for name, _, _ in laid_out["bars"]] == phases
        assert all(width >= 1.0 and height >= 8.0 for _, width, height in laid_out["bars"])
        assert laid_out["outages"] == len(record.outages)
        assert laid_out["width"] > 1000  # the timeline fills the page's width
    rects = [a for tag, a in dom.tags if tag == "rect" and "phase-bar" in a.get("class", "")]
    assert len(rects) == sum(1 for t in sample.drills for r in t.results if r.start and r.end)


def test_chromium_lays_out_event_labels_without_overlap_or_clipping(dom: Dom) -> None:
    """Measured by the browser, not estimated: no two labels overlap, no text leaves the SVG."""
    for laid_out in dom.layout["drills"]:
        assert laid_out["labels"] > 10
        assert laid_out["overlaps"] == 0
        assert laid_out["outside"] == []


def test_chromium_shows_each_drills_figures_and_event_log(sample: RunRecord, dom: Dom) -> None:
    """The per-drill tables hold every figure and every event."""
    figures = dom.table("figures")
    for record in sample.drills:
        for result in record.results:
            assert any(
                row.startswith(result.name + " ") and format_measurement(result.measured) in row
                for row in figures
            )
    events = [row for row in dom.table("events") if not row.startswith("t UTC")]
    assert len(events) == sum(len(t.events) for t in sample.drills)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_screenshot_of_the_sample_run(sample: RunRecord, tmp_path: Path) -> None:
    """A 1400x2200 PNG with content (a blank page of that size compresses to ~5 kB)."""
    page = tmp_path / "report.html"
    page.write_text(render_html(sample), encoding="utf-8")
    png = tmp_path / "report.png"
    done = _run_chromium(tmp_path / "profile", f"--screenshot={png}", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    data = png.read_bytes()
    assert _png_size(data) == WINDOW
    assert len(data) > 100_000
    if os.environ.get("DRDRILL_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(data)


#: run in the test's copy of the page only: what the layout made of the verdict line
VERDICT_PROBE = """<script>
(function () {
  var first = document.body.firstElementChild;
  var style = getComputedStyle(first);
  var r = first.getBoundingClientRect();
  document.body.setAttribute("data-layout", JSON.stringify({
    id: first.id, text: first.textContent, color: style.color, background: style.backgroundColor,
    top: r.top, right: r.right, lines: Math.round(r.height / parseFloat(style.lineHeight)),
    pageWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth
  }));
})();
</script>"""


def test_chromium_opens_with_the_verdict_coloured_and_never_scrolls_sideways_at_1280(
    sample: RunRecord, tmp_path: Path
) -> None:
    """The verdict is the first thing on the page, red for a failed run, wrapped to the window:
    at 1280 px nothing needs horizontal scrolling."""
    long_reason = "replication stopped: " + "the replica's IO thread is not running; " * 6
    run = copy.deepcopy(sample)  # the module's sample stays as it was for the other tests
    failed = run.test("suites/test_readiness.py::test_replication_running_with_a_long_name")
    failed.outcome, failed.message = "failed", long_reason[:300]
    page = tmp_path / "report.html"
    page.write_text(
        render_html(run).replace("</body>", VERDICT_PROBE + "</body>"), encoding="utf-8"
    )
    done = _run_chromium(tmp_path / "p", "--dump-dom", page.as_uri(), window=(1280, 900))
    assert done.returncode == 0, done.stderr[-2000:]
    layout = Dom(done.stdout).layout
    assert layout["id"] == "verdict" and layout["top"] == 0
    assert layout["text"].startswith("FAILED — 3 passed, 1 failed")
    assert layout["color"] == "rgb(207, 34, 46)"  # --missed
    assert layout["lines"] >= 2  # the long line wraps
    assert layout["right"] <= 1280
    assert layout["pageWidth"] <= layout["viewWidth"] == 1280
