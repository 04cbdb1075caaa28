"""``salesml monitor``'s bad input: each case names what is wrong and exits 2 (1 is kept for "an alert fired").
The rules and the webhook themselves: tests/unit/test_monitor_rules.py."""

from __future__ import annotations

from pathlib import Path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_the_monitor_command_says_what_is_wrong_and_exits_2(
    salesml, fresh_home: Path, tmp_path: Path, small_synthetic_spec: Path
) -> None:
    unknown = salesml("monitor", "--dataset", "no-such-data-set")
    assert unknown.returncode == 2 and "no-such-data-set" in unknown.stderr
    bad_day = salesml("monitor", "--dataset", str(small_synthetic_spec), "--as-of", "2025-13-01")
    assert bad_day.returncode == 2 and "--as-of must be a date written YYYY-MM-DD" in bad_day.stderr
    rules = _write(tmp_path, "rules:\n  - {name: a, metric: nope, threshold: 0.1}\n")
    bad_rules = salesml("monitor", "--dataset", str(small_synthetic_spec), "--rules", str(rules))
    assert bad_rules.returncode == 2 and "rules.0.metric" in bad_rules.stderr
    nothing = salesml("monitor", "--dataset", str(small_synthetic_spec), "--no-log")
    assert nothing.returncode == 2 and "has no champion to monitor" in nothing.stderr
