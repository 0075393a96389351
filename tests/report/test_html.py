"""report.html from a real sandbox failover run: content, self-containment, escaping, structure."""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from drdrill.measure import Measurement, Result
from drdrill.report.html import (
    LABEL_CHAR_WIDTH,
    format_measurement,
    page_view,
    render_html,
    write_html,
)
from drdrill.report.json_report import run_from_json
from drdrill.report.record import OutageRecord, RpoRecord, RunRecord
from drdrill.timeline import Event, Source

SAMPLE = Path(__file__).parent.parent / "data" / "reports" / "sample-failover.json"
#: elements that never have an end tag in HTML
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}
#: attributes that make a browser fetch something
RESOURCE_ATTRS = {"src", "href", "xlink:href", "srcset", "poster", "action", "data", "formaction"}


@dataclass
class Element:
    """An element as parsed: tag, attributes, text inside it (descendants' too)."""

    tag: str
    attrs: dict[str, str]
    #: the tags of the elements it is inside, outermost first
    parents: tuple[str, ...] = ()
    text: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def content(self) -> str:
        return " ".join("".join(self.text).split())


class Page(HTMLParser):
    """Parses a page, checking that every element is closed in order (a structure check)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.errors: list[str] = []
        self.doctype = ""
        self.feed(html)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {[e.tag for e in self.stack]}")

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def _gap(self) -> None:
        # element boundaries separate words, as the browser's block layout does
        for element in self.stack:
            element.text.append(" ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._gap()
        element = Element(tag, {k: v or "" for k, v in attrs}, tuple(e.tag for e in self.stack))
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1].tag != tag:
            open_tag = self.stack[-1].tag if self.stack else None
            self.errors.append(f"</{tag}> closes <{open_tag}> at {self.getpos()}")
            return
        self.stack.pop()
        self._gap()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[Element]:
        return [e for e in self.elements if e.tag == tag and (cls is None or cls in e.classes)]


def _load(data: dict[str, Any] | None = None) -> RunRecord:
    return run_from_json(data if data is not None else _sample_data())


def _sample_data() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def sample() -> RunRecord:
    return _load()


@pytest.fixture(scope="module")
def html(sample: RunRecord) -> str:
    return render_html(sample)


@pytest.fixture(scope="module")
def page(html: str) -> Page:
    return Page(html)


def _row(page: Page, table_cls: str, first_cell: str) -> str:
    """The text of the row of a table whose first cell is ``first_cell``."""
    rows = [
        e.content()
        for e in page.find("tr")
        if e.content().startswith(first_cell + " ") and _inside(page, e, table_cls)
    ]
    assert len(rows) == 1, (first_cell, rows)
    return rows[0]


def _inside(page: Page, row: Element, table_cls: str) -> bool:
    # a body row belongs to the last table opened before it
    if "tbody" not in row.parents:
        return False
    index = page.elements.index(row)
    tables = [e for e in page.elements[:index] if e.tag == "table"]
    return bool(tables) and table_cls in tables[-1].classes


def test_sample_is_a_region_failover_run_with_three_drills(sample: RunRecord) -> None:
    """The fixture is what the other tests assume: three failover drills with phases."""
    assert [t.nodeid.rsplit("[", 1)[-1] for t in sample.drills] == [
        "automated]",
        "script]",
        "lambda]",
    ]
    assert all(t.outages and t.rpo for t in sample.drills)


def test_page_is_well_formed_html(page: Page) -> None:
    """Every element closes in order; a doctype, a title, one svg a drill."""
    assert page.errors == []
    assert page.doctype.lower() == "doctype html"
    assert page.find("title")[0].content() == "DR drill report: run 20261129T011824Z-0f09e8"
    assert len(page.find("svg", "timeline")) == 3


def test_header_names_run_target_times_objectives_and_counts(page: Page) -> None:
    """What the header says, read from the parsed page (not the raw markup)."""
    facts = dict(
        zip(
            [e.content() for e in page.find("dt")],
            [e.content() for e in page.find("dd")],
            strict=True,
        )
    )
    assert facts["Run"] == "20261129T011824Z-0f09e8"
    assert facts["Target"] == "sandbox (sandbox), 3 workers: gw0, gw1, gw2"
    assert facts["Started"] == "2026-11-29 01:18:25.794 UTC"
    assert facts["Finished"] == "2026-11-29 01:18:40.884 UTC (15.1 s)"
    assert facts["Objectives"] == "/work/main/docs/runbook.md"
    assert facts["Scale"] == "runbook figures scaled by 0.02"
    counts = [e.content() for e in page.find("span", "count")]
    assert counts == ["3 passed", "0 failed", "3 drills"]


def test_objectives_table_has_the_worst_figure_beside_each_runbook_row(page: Page) -> None:
    """Worst across the three drills, with its ground-truth error, as report.md chooses it."""
    total = _row(page, "objectives", "Total RTO")
    assert "18 s" in total
    assert "6.623 ± 0.025 s (worst of 3)" in total
    assert "✓ met" in total
    assert "-26.0 ms" in total  # the worst (script) drill's error against the sandbox's truth
    assert "10-20 minutes" in total
    detection = _row(page, "objectives", "Detection")
    assert "1.353 ± 0.000 s (worst of 3)" in detection
    assert "2.4 s" in detection
    static = _row(page, "objectives", "Static Assets")
    assert "not measured" in static
    downtime = _row(page, "objectives", "client downtime")
    assert "no objective" in downtime
    assert "not a row of the runbook" in downtime


def test_every_phase_name_and_measured_value_is_shown(sample: RunRecord, page: Page) -> None:
    """Each figure of each drill, formatted as report.md formats it, in its drill's table."""
    figures = [e.content() for e in page.find("tr") if _inside(page, e, "figures")]
    for drill in sample.drills:
        for result in drill.results:
            text = format_measurement(result.measured)
            assert any(row.startswith(result.name + " ") and text in row for row in figures), (
                result.name,
                text,
            )
    assert "2.547 ± 0.003 s" in " ".join(figures)  # automated Total RTO, spelled out once
    bars = [e.attrs["data-phase"] for e in page.find("g", "phase")]
    assert bars[:8] == [
        "Detection",
        "Decision",
        "RDS Promotion",
        "ECS Scale-up",
        "Health Verification",
        "DNS Update",
        "Total RTO",
        "client downtime",
    ]


def test_one_bar_a_phase_and_bar_length_is_the_measured_span(sample: RunRecord) -> None:
    """A bar per figure with two events; its length on the axis is the figure (to 5 ms)."""
    view = page_view(sample)
    for drill, record in zip(view.drills, sample.drills, strict=True):
        assert drill.timeline is not None
        phases = [r for r in record.results if r.start and r.end]
        assert [b.name for b in drill.timeline.bars] == [r.name for r in phases]
        per_unit = float(drill.timeline.ticks[1].label.split()[0]) / (
            drill.timeline.ticks[1].x - drill.timeline.ticks[0].x
        )
        for bar, result in zip(drill.timeline.bars, phases, strict=True):
            if bar.width > 2.0:  # shorter bars are drawn 2 units wide to stay visible
                assert bar.width * per_unit == pytest.approx(abs(result.measured.value), abs=0.005)
            assert drill.timeline.plot_left <= bar.x <= drill.timeline.plot_right
    total = next(b for b in view.drills[0].timeline.bars if b.name == "Total RTO")  # type: ignore[union-attr]
    assert total.target_clipped  # 18 s does not fit a 7 s drill: drawn to the edge, labelled
    assert total.target_label == "target 18 s ▸"


def test_event_labels_of_a_row_do_not_overlap(sample: RunRecord) -> None:
    """The label rows are chosen so that no two labels of one row share any width."""
    for drill in page_view(sample).drills:
        assert drill.timeline is not None
        rows: dict[float, list[tuple[float, float]]] = {}
        for mark in drill.timeline.events:
            width = len(mark.name) * LABEL_CHAR_WIDTH
            left = mark.label_x if mark.anchor == "start" else mark.label_x - width
            rows.setdefault(mark.label_y, []).append((left, left + width))
        for spans in rows.values():
            spans.sort()
            for (_, end), (start, _) in itertools.pairwise(spans):
                assert end <= start
        assert all(m.whisker_x <= m.x for m in drill.timeline.events)


def test_outage_strips_and_rpo_panel(page: Page) -> None:
    """A strip an endpoint with its outages; the markers' figures of each drill."""
    strips = page.find("g", "strip")
    assert len(strips) == 18  # six endpoints in each of three drills
    automated = strips[:6]
    assert automated[0].attrs["data-endpoint"] == (
        "http://app.visitor-analytics.test:28280/health-simple.php"
    )
    assert "57.5% up · out 2.54 s" in automated[0].content()
    assert len(page.find("rect", "outage")) == 18
    panels = page.find("div", "rpo")
    assert len(panels) == 3
    first = panels[0].content()
    for expected in ("Sent 105", "Acknowledged 55", "Lost acknowledged writes 0", "none"):
        assert expected in first
    assert "Loss window 0.000 s" in first


def test_event_log_lists_every_event_with_its_uncertainty(sample: RunRecord, page: Page) -> None:
    """One row an event, time since the drill's first event, source and uncertainty."""
    rows = [e.content() for e in page.find("tr") if _inside(page, e, "events")]
    assert len(rows) == sum(len(t.events) for t in sample.drills)
    fault = next(r for r in rows if " fault_injected " in r)
    assert fault.startswith("+1.551 s 2026-11-29 01:18:32.")
    assert "action" in fault
    assert "kind=sandbox.region_down" in fault
    seen = next(r for r in rows if " alarm_seen " in r)
    assert "± 0.053 s" in seen


def test_a_missed_objective_says_missed_in_words_and_colour() -> None:
    """Tighten Total RTO to 3 s: the script drill (6.6 s) misses it, the others meet it."""
    data = _sample_data()
    data["objectives"]["rto"]["Total RTO"]["target_s"] = 3.0
    for phase in data["phases"]:
        if phase["name"] == "Total RTO":
            phase["target_s"] = 3.0
    page = Page(render_html(_load(data)))
    assert page.errors == []
    total = _row(page, "objectives", "Total RTO")
    assert "✗ MISSED" in total
    assert "3 s" in total
    status = [e for e in page.find("span", "status") if "MISSED" in e.content()]
    assert status and all("missed" in e.classes for e in status)
    bars = [e for e in page.find("rect", "phase-bar") if "missed" in e.classes]
    assert len(bars) == 1  # only the script drill's Total RTO
    overview = [e.content() for e in page.find("tr") if _inside(page, e, "overview")]
    assert sum("1 MISSED" in row for row in overview) == 1


def test_the_sample_as_run_misses_nothing(html: str) -> None:
    """The word is there only when a figure is over its target."""
    assert "MISSED" not in html


def test_no_resource_is_fetched_from_anywhere(html: str, page: Page) -> None:
    """Self-contained: no script, stylesheet, image or font from a URL; links are in-page."""
    assert not page.find("script")
    assert not page.find("link")
    assert not page.find("img")
    for element in page.elements:
        for name, value in element.attrs.items():
            if name in RESOURCE_ATTRS:
                assert value.startswith("#"), (element.tag, name, value)
    style = "\n".join(e.content() for e in page.find("style"))
    style += "\n".join(e.attrs.get("style", "") for e in page.elements)
    assert "@import" not in style
    assert re.findall(r"url\(\s*['\"]?(?!#)", style) == []
    # the only URLs are endpoints, shown as text
    urls = {u.rstrip(",:;.") for u in re.findall(r"https?://[^\s\"'<>]+", html)}
    endpoints = {e.attrs["data-endpoint"] for e in page.find("g", "strip")}
    assert urls and urls <= endpoints


def _instant(seconds: float) -> datetime:
    return datetime(2026, 11, 29, 1, 0, tzinfo=UTC) + timedelta(seconds=seconds)


def _event(name: str, at: float, **attrs: Any) -> Event:
    return Event(name, _instant(at), 1000.0 + at, Source.OBSERVED, 0.05, attrs)


def test_sparse_drills_still_render() -> None:
    """A drill with only an event, one with only a figure, one with an open outage."""
    run = RunRecord("r1", {"name": "t", "kind": "local"}, {"rto": {}, "rpo": {}}, None, 1.0)
    run.test("t.py::only_event").events.append(_event("fault_injected", 0.0))
    run.test("t.py::only_figure").results.append(
        Result("Database", "rpo", Measurement(0.0), None, "Database")
    )
    open_test = run.test("t.py::open_outage")
    open_test.outages.append(
        OutageRecord("http://127.0.0.1:9/x", _instant(1.0), None, None, 0.05, 0.0)
    )
    open_test.rpo.append(RpoRecord("w", 10, 8, 3, (4, 5, 6), 1, 0.75))
    run.test("t.py::not_a_drill")
    page = Page(render_html(run))
    assert page.errors == []
    sections = page.find("section", "drill")
    assert [s.attrs["id"] for s in sections] == ["drill-1", "drill-2", "drill-3"]
    assert "no phase measured between two events" in sections[0].content()
    assert "No events or outages recorded" in sections[1].content()
    assert "No figure measured" in sections[0].content()
    assert len(page.find("rect", "open")) == 1
    panel = page.find("div", "rpo")[0].content()
    assert "Lost acknowledged writes 3" in panel
    assert "4, 5, 6" in panel
    assert "Loss window 0.750 s" in panel
    overview = [e.content() for e in page.find("tr") if _inside(page, e, "overview")]
    assert len(overview) == 4  # the test that measured nothing is listed, without a section
    assert "No objectives of this kind." in page.find("section")[0].content()


def test_many_lost_ids_are_cut_with_a_count() -> None:
    """A long list of lost markers is cut, saying how many more report.json has."""
    run = RunRecord("r1", {"name": "t", "kind": "local"}, {"rto": {}, "rpo": {}}, None, 1.0)
    run.test("t.py::lossy").rpo.append(RpoRecord("w", 200, 200, 100, tuple(range(100)), 0, 2.0))
    panel = Page(render_html(run)).find("div", "rpo")[0].content()
    assert "0, 1, 2," in panel
    assert "59, … and 40 more (see report.json)" in panel
    assert "60," not in panel


def test_everything_a_target_reports_is_escaped() -> None:
    """Markup in node ids, endpoints, event names and attributes shows as text."""
    evil = "<script>alert(1)</script>"
    run = RunRecord(
        "r<1>",
        {"name": evil, "kind": "x", "note": evil},
        {"rto": {evil: {"target_s": 1.0, "actual": evil, "notes": evil}}, "rpo": {}},
        evil,
        1.0,
    )
    test = run.test(f"t.py::drill[{evil}]")
    test.message = evil
    test.events += [_event(evil, 0.0, why=evil), _event("end", 1.0)]
    test.results.append(
        Result(evil, "rto", Measurement(1.0, 0.05), 1.0, evil, start=evil, end="end")
    )
    test.outages.append(
        OutageRecord(f"http://h/{evil}", _instant(0.2), _instant(0.6), 0.4, 0.0, 0.0)
    )
    html = render_html(run)
    page = Page(html)
    assert page.errors == []
    assert not page.find("script")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert evil in page.find("p", "message")[0].content()
    assert page.find("title")[0].content() == "DR drill report: run r<1>"


def test_write_html_writes_the_page(tmp_path: Path, sample: RunRecord, html: str) -> None:
    """write_html makes the folder, writes UTF-8 and returns the path."""
    path = write_html(sample, tmp_path / "run" / "report.html")
    assert path == tmp_path / "run" / "report.html"
    assert path.read_text(encoding="utf-8") == html


def test_nan_figures_do_not_break_the_page() -> None:
    """A figure written as null in report.json (not finite) reads 'not finite'."""
    data = copy.deepcopy(_sample_data())
    data["phases"][0]["measured"] = None
    page = Page(render_html(_load(data)))
    assert page.errors == []
    assert "not finite" in " ".join(e.content() for e in page.find("table", "figures"))


def test_drills_table_shows_each_drills_severity(html: str) -> None:
    """Region failovers take every probed endpoint down together: P1 by the escalation matrix."""
    assert html.count("P1 - Critical") == 3
    assert "all 6 probed endpoints down together" in html


# --- the time within Total RTO in no phase (issue 11) -----------------------------------------


def _section(page: Page, anchor: str) -> list[Element]:
    """The elements of one drill's section, in document order."""
    start = next(i for i, e in enumerate(page.elements) if e.attrs.get("id") == anchor)
    after = [
        i
        for i, e in enumerate(page.elements)
        if i > start and e.tag == "section" and "drill" in e.classes
    ]
    return page.elements[start : after[0] if after else len(page.elements)]


def test_the_script_drills_gaps_are_drawn_and_named(page: Page) -> None:
    """The script trigger's CLI calls between the promotion and the scale-up, and the rest of
    Total RTO in no phase: a hatched span each on a row under the phases, named in a list."""
    script = _section(page, "drill-2")
    assert len([e for e in script if e.tag == "rect" and "gap" in e.classes]) == 3
    (row,) = [e for e in script if e.tag == "g" and "gaps" in e.classes]
    assert "not in any phase" in row.content() and "3 gaps · 3.50 s" in row.content()
    (heading,) = [e for e in script if e.tag == "p" and "gaps" in e.classes]
    assert heading.content() == (
        "Time within Total RTO that no phase covers (gaps of 0.2 s or more):"
    )
    items = [e.content() for e in script if e.tag == "li"]
    assert items == [
        "not in any phase: 0.694 ± 0.005 s between 'replica_writable' (end of RDS Promotion) "
        "and 'scale_asked' (start of ECS Scale-up)",
        "not in any phase: 1.273 ± 0.025 s between 'dr_tasks_healthy' (end of ECS Scale-up) "
        "and 'dns_record_changed' (start of DNS Update)",
        "not in any phase: 1.538 ± 0.035 s between 'dns_answers_dr' (end of DNS Update) "
        "and 'write_acknowledged' (end of Total RTO)",
    ]
    # the legend explains the span; a gap is never drawn as a phase bar
    assert any("not in any phase: time within Total RTO" in e.content() for e in script)
    assert len([e for e in script if e.tag == "rect" and "phase-bar" in e.classes]) == 8
    automated = _section(page, "drill-1")
    assert [e.content() for e in automated if e.tag == "li"] == [
        "not in any phase: 0.374 ± 0.047 s between 'dns_answers_dr' (end of DNS Update) "
        "and 'write_acknowledged' (end of Total RTO)"
    ]


def test_a_gap_is_drawn_between_the_bars_it_separates(sample: RunRecord) -> None:
    """The gap starts where RDS Promotion's bar ends and ends where ECS Scale-up's begins."""
    timeline = page_view(sample).drills[1].timeline
    assert timeline is not None
    bars = {b.name: b for b in timeline.bars}
    first = timeline.gaps[0]
    promotion, scale = bars["RDS Promotion"], bars["ECS Scale-up"]
    # the 5 ms promotion's bar is drawn 2 units wide: its end is where its figure says
    units = (timeline.ticks[1].x - timeline.ticks[0].x) / float(timeline.ticks[1].label.split()[0])
    promoted = next(r for r in sample.drills[1].results if r.name == "RDS Promotion")
    assert first.x == pytest.approx(promotion.x + promoted.measured.value * units, abs=0.01)
    assert first.x + first.width == pytest.approx(scale.x, abs=0.01)
    assert first.label == ""  # 42 units: too narrow for its words, which its title has
    assert [g.label for g in timeline.gaps[1:]] == ["1.27 s", "1.54 s"]
    assert timeline.gaps_y > max(b.y for b in timeline.bars)
    assert timeline.events_y > timeline.gaps_y


def test_a_drill_with_every_moment_in_a_phase_or_without_phases_lists_no_gap() -> None:
    """Phases that cover Total RTO: a line says so and no row is drawn; a drill with a Total
    RTO and no other phase (a reboot drill) says nothing of gaps."""
    run = RunRecord("r1", {"name": "t", "kind": "local"}, {"rto": {}, "rpo": {}}, None, 1.0)
    covered = run.test("t.py::covered")
    covered.events += [_event("fault_injected", 0.0), _event("a", 1.1), _event("restored", 2.0)]
    covered.results += [
        Result("Detection", "rto", Measurement(1.1), None, "Detection", "fault_injected", "a"),
        Result("Decision", "rto", Measurement(0.9), None, "Decision", "a", "restored"),
        Result(
            "Total RTO", "rto", Measurement(2.0), None, "Total RTO", "fault_injected", "restored"
        ),
    ]
    reboot = run.test("t.py::reboot")
    reboot.events += [_event("fault_injected", 0.0), _event("restored", 2.0)]
    reboot.results.append(
        Result(
            "Total RTO", "rto", Measurement(2.0), None, "Total RTO", "fault_injected", "restored"
        )
    )
    page = Page(render_html(run))
    assert page.errors == []
    assert not page.find("rect", "gap") and not page.find("li")
    (note,) = page.find("p", "gaps")
    assert note.content() == "Every stretch of Total RTO of 0.2 s or more is in some phase."
    assert "Every stretch" not in " ".join(e.content() for e in _section(page, "drill-2"))


# --- endpoints expected down (pilot light, issue 11) ------------------------------------------

#: the region failover probes each DR load balancer directly with steady=False
DR_DIRECT = re.compile(r"^http://127\.\d\.2\.2:")


def _expected_data() -> dict[str, Any]:
    """The sample as a run that records expectations writes it: the DR load balancers' outages
    from their first sample on (start unknown) marked expected down."""
    data = copy.deepcopy(_sample_data())
    for outage in data["outages"]:
        if DR_DIRECT.match(outage["endpoint"]):
            assert outage["start_uncertainty_s"] == 0.0  # probing began while it was down
            outage["expected_down"] = True
    return data


def test_an_expected_down_stretch_is_drawn_apart_not_as_an_outage() -> None:
    """The DR load balancer before it first came up: a neutral span labelled "expected down
    (pilot light)", with a legend entry; the public endpoints' outages stay red."""
    page = Page(render_html(_load(_expected_data())))
    assert page.errors == []
    assert len(page.find("rect", "outage")) == 9  # the public endpoints' only
    expected = page.find("rect", "expected-down")
    assert len(expected) == 9
    assert all("open" not in e.classes for e in expected)
    script = _section(page, "drill-2")
    strips = [e for e in script if e.tag == "g" and "strip" in e.classes]
    dr = [s for s in strips if DR_DIRECT.match(s.attrs["data-endpoint"])]
    assert len(dr) == 3
    for strip in dr:
        text = strip.content()
        assert "expected down (pilot light)" in text  # drawn on the span
        assert "48.4% up · no outage once up" in text
        assert "before it first came up" in text  # its title
    public = [s for s in strips if s not in dr]
    assert all("out 6.5" in s.content() for s in public)
    caption = next(e for e in script if e.tag == "figcaption")
    legend = [
        e.content()
        for e in script
        if e.tag == "span" and "figcaption" in e.parents and "expected down" in e.content()
    ]
    assert "expected down (pilot light)" in caption.content()
    assert legend == [
        "expected down (pilot light): an endpoint down by design, before it first came up; "
        "not an outage"
    ]
    # the endpoints table counts no outage for it, and says how long it was expected down
    row = _row(page, "probes", "http://127.2.2.2:28480/")
    assert row.endswith(" 0 expected down 4.950 s before first up")
    svg = next(e for e in script if e.tag == "svg")
    assert "3 outages (3 expected down)" in svg.attrs["aria-label"]


def test_the_sample_as_recorded_draws_no_expectation(page: Page) -> None:
    """A report written before expectations were recorded: every stretch is an outage, and no
    legend entry speaks of expected down."""
    assert not page.find("rect", "expected-down")
    assert "expected down" not in " ".join(e.content() for e in page.find("figcaption"))


def test_an_outage_after_an_expected_endpoint_came_up_stays_an_outage() -> None:
    """Down by design until it came up, then down again: the second stretch is an outage."""
    run = RunRecord("r1", {"name": "t", "kind": "local"}, {"rto": {}, "rpo": {}}, None, 1.0)
    test = run.test("t.py::pilot")
    test.events += [_event("fault_injected", 0.0), _event("restored", 6.0)]
    url = "http://dr-lb:80/health"
    test.outages += [
        OutageRecord(url, _instant(0.0), _instant(3.0), 3.0, 0.0, 0.05, expected_down=True),
        OutageRecord(url, _instant(4.0), _instant(4.5), 0.5, 0.05, 0.05, 0.05),
    ]
    page = Page(render_html(run))
    assert page.errors == []
    (expected,) = page.find("rect", "expected-down")
    (outage,) = page.find("rect", "outage")
    assert float(expected.attrs["x"]) < float(outage.attrs["x"])
    (strip,) = page.find("g", "strip")
    assert "out 0.50 s once up" in strip.content()
    # still down by design at the end: drawn expected and open, and said so
    test.outages[:] = [OutageRecord(url, _instant(0.0), None, None, 0.0, 0.0, expected_down=True)]
    page = Page(render_html(run))
    (never,) = page.find("rect", "expected-down")
    assert "open" in never.classes and not page.find("rect", "outage")
    assert "never came up" in page.find("g", "strip")[0].content()


def test_expected_down_is_recorded_for_steady_false_probes_and_read_back() -> None:
    """probe_records marks the stretch open from the first sample of an endpoint probed with
    steady=False, never a later outage and never a steady endpoint's; report.json keeps it and
    a report without the field reads every stretch as an outage."""
    from drdrill.probes.stats import ERROR_REFUSED, Sample, endpoint_stats
    from drdrill.report.json_report import run_to_json
    from drdrill.report.record import probe_records

    url = "http://dr-lb:80/health"
    pattern = "xxxxxx......xx....."  # down by design, up, down again, up
    bad = (None, 0.002, ERROR_REFUSED)
    samples = [  # ``.`` good, ``x`` refused, one every 0.05 s
        Sample(k * 0.05, k * 0.05, 1e9 + k * 0.05, *((200, 0.002, None) if m == "." else bad))
        for k, m in enumerate(pattern)
    ]
    stats = [endpoint_stats(url, url, samples)]
    _, outages = probe_records(stats, expected_down=True)
    assert [o.expected_down for o in outages] == [True, False]
    _, steady = probe_records(stats)
    assert [o.expected_down for o in steady] == [False, False]

    run = RunRecord("r1", {"name": "t", "kind": "local"}, {"rto": {}, "rpo": {}}, None, 1.0)
    run.test("t.py::pilot").outages.extend(outages)
    data = json.loads(json.dumps(run_to_json(run)))
    assert [o["expected_down"] for o in data["outages"]] == [True, False]
    assert run_from_json(data).tests[0].outages == outages
    for outage in data["outages"]:
        del outage["expected_down"]
    assert not any(o.expected_down for o in run_from_json(data).tests[0].outages)


def test_report_md_lists_the_expected_down_stretch_apart_from_the_outages() -> None:
    """report.md's outage table has the public endpoints' outages only; the DR load balancers'
    stretches before they came up follow it, as expected down."""
    from drdrill.report.markdown import render_markdown

    md = render_markdown(_load(_expected_data()))
    section = md.split("## Outages (client-observed)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| suites/")]
    assert len(rows) == 9 and not any("127." in r for r in rows)
    assert "Expected down, not outages:" in section
    listed = [line for line in section.splitlines() if line.startswith("- suites/")]
    assert len(listed) == 9
    assert (
        "- suites/test_region_failover.py::test_region_failover[script]: "
        "http://127.2.2.2:28480/ until 2026-11-29T01:18:35.753165+00:00 (4.950 s)"
    ) in listed
