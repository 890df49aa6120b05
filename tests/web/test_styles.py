"""The shared page styles: every status badge is readable, with 4.5:1 contrast."""

from __future__ import annotations

import re
from pathlib import Path

import certwatch.web

STYLES = Path(certwatch.web.__file__).parent / "templates" / "_styles.html"
BADGE_RULE = re.compile(
    r"\.badge-(?P<name>[a-z]+) \{ background: (?P<background>#[0-9a-f]{6}); "
    r"color: (?P<color>#[0-9a-f]{6});"
)


def luminance(colour: str) -> float:
    """Return the relative luminance of an sRGB colour as WCAG 2.1 defines it."""
    channels = []
    for start in (1, 3, 5):
        value = int(colour[start : start + 2], 16) / 255
        if value <= 0.04045:
            channels.append(value / 12.92)
        else:
            channels.append(((value + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_known_pairs() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert contrast("#777777", "#ffffff") < 4.5


def test_badges_contrast_and_coverage() -> None:
    rules = {
        match["name"]: (match["background"], match["color"])
        for match in BADGE_RULE.finditer(STYLES.read_text())
    }

    assert set(rules) == {"critical", "warning", "unknown", "ok", "info", "pending"}
    for name, (background, color) in rules.items():
        assert contrast(background, color) >= 4.5, name


def test_one_badge_style_in_templates() -> None:
    templates = STYLES.parent
    texts = {path.name: path.read_text() for path in templates.glob("*.html")}

    assert not any('class="severity' in text for text in texts.values())
    assert not any('class="status status-' in text for text in texts.values())
    assert sum("<style>" in text for text in texts.values()) == 2
