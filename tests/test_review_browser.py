"""The HTML review renders its chart in headless Chromium, with no network access."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import slakit
from slakit.review import WeeklyReview, build_review

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("heavy")]

MON = datetime(2026, 11, 23, 9, tzinfo=UTC)  # Monday of 2026-W48
WALL_RGB = (0x1F, 0x6F, 0xB4)
BUSINESS_RGB = (0xE0, 0x7B, 0x00)


def chromium() -> str:
    """The Chromium binary; skip (or fail under CI) when there is none."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if found is None:
        reason = "headless Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [r if channels == 3 else _drop_alpha(r) for r in rows]


def _drop_alpha(row: bytes) -> bytes:
    return b"".join(row[i : i + 3] for i in range(0, len(row), 4))


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tol: int = 24) -> bool:
    return all(abs(p - c) <= tol for p, c in zip(pixel, colour, strict=True))


@pytest.fixture(scope="module")
def sheet() -> WeeklyReview:
    """Five weeks with different hit rates; evening arrivals make the two series differ."""
    cal = slakit.BusinessCalendar.weekdays("UTC", "09:00-17:00")
    engine = slakit.Engine(
        policies=[slakit.Policy(name="lead", calendar=cal, sla_minutes=30)],
        clock=slakit.ManualClock(MON),
    )
    for back in range(5):
        base = MON - timedelta(weeks=back)
        for i, hour in enumerate((0, 1, 2, 11)):  # 09:00, 10:00, 11:00 and 20:00
            hid = f"w{back}-{i}"
            engine.start(hid, policy="lead", owner="ann", started_at=base + timedelta(hours=hour))
            delay = 10 if i < 3 - back % 3 else 50
            engine.respond(hid, at=base + timedelta(hours=hour, minutes=delay))
    return build_review(engine.store, engine.policies, now=MON + timedelta(days=4))


class TestReviewInBrowser:
    def test_screenshot_shows_the_chart(self, sheet: WeeklyReview, tmp_path: Path) -> None:
        """The page renders: the screenshot is not blank and shows both series' colours."""
        page = tmp_path / "review.html"
        page.write_text(sheet.to_html(), encoding="utf-8")
        shot = tmp_path / "review.png"
        result = run_chromium(page, tmp_path / "profile", f"--screenshot={shot}")
        assert shot.exists(), result.stderr[-2000:]
        data = shot.read_bytes()
        assert len(data) > 5000
        width, height, rows = decode_png(data)
        assert (width, height) == (1200, 900)
        pixels = {tuple(row[i : i + 3]) for row in rows[::2] for i in range(0, len(row), 6)}
        assert len(pixels) > 20, "the screenshot is (nearly) a single colour"
        assert any(near(p, WALL_RGB) for p in pixels)  # type: ignore[arg-type]
        assert any(near(p, BUSINESS_RGB) for p in pixels)  # type: ignore[arg-type]

    def test_dom_has_one_point_per_week(self, sheet: WeeklyReview, tmp_path: Path) -> None:
        """The rendered DOM holds one marker per week for each series, in week order."""
        page = tmp_path / "review.html"
        page.write_text(sheet.to_html(), encoding="utf-8")
        result = run_chromium(page, tmp_path / "profile", "--dump-dom")
        dom = result.stdout
        assert 'id="hit-rate-chart"' in dom, result.stderr[-2000:]
        weeks = [w.week for w in sheet.history]
        assert len(weeks) == 5
        for series in ("wall", "business"):
            found = re.findall(
                rf'<circle class="point (?:empty )?{series}" data-week="([^"]+)"', dom
            )
            assert found == weeks
