"""The tuning knobs (p2pshare/config.py): read once from the environment, bounded, and all of
them in docs/tuning.md's table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from p2pshare.config import KNOBS, Tuning, tuning_table

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_table_is_the_knobs_table() -> None:
    """docs/tuning.md holds exactly the table generated from KNOBS (edit KNOBS, regenerate)."""
    assert tuning_table() in (ROOT / "docs" / "tuning.md").read_text()


def test_every_field_has_one_knob_and_no_environment_is_the_defaults() -> None:
    """Each Tuning field is set by exactly one variable; an empty environment changes nothing."""
    fields = [f.name for f in dataclasses.fields(Tuning)]
    assert sorted(k.field for k in KNOBS) == sorted(fields)
    assert len({k.env for k in KNOBS}) == len(KNOBS)
    assert Tuning.from_env({}) == Tuning()


def test_values_are_read_into_their_fields() -> None:
    """Each variable lands in its field, parsed (a flag, a number, a name, a path)."""
    tuning = Tuning.from_env(
        {
            "P2PSHARE_WINDOW_BYTES": str(4 * 1024 * 1024),
            "P2PSHARE_LARGE_PACKETS": "0",
            "P2PSHARE_STOCK_SCTP": "1",
            "P2PSHARE_SCTP_RTO_MIN_S": "0.5",
            "P2PSHARE_HASH": "sha256",
            "P2PSHARE_LINK_REPORT": "/tmp/x.jsonl",
            "P2PSHARE_COMPRESS_WHEN_AHEAD": "0",
            "UNRELATED": "ignored",
        }
    )
    assert tuning == Tuning(
        window_bytes=4 * 1024 * 1024,
        large_packets=False,
        stock_sctp=True,
        sctp_rto_min_s=0.5,
        hash="sha256",
        link_report="/tmp/x.jsonl",
        compress_when_ahead=0,
    )


@pytest.mark.parametrize(
    ("env", "raw", "says"),
    [
        ("P2PSHARE_WINDOW_BYTES", "16384", "1,048,576 to 1,073,741,824"),
        ("P2PSHARE_WINDOW_BYTES", "lots", "1,048,576 to 1,073,741,824"),
        ("P2PSHARE_MESSAGE_BYTES", "100", "16,384 to 1,048,576"),
        ("P2PSHARE_LARGE_PACKETS", "no", "0 or 1"),
        ("P2PSHARE_CREDIT_STALL_S", "0", "above 0, up to 3600"),
        ("P2PSHARE_CREDIT_STALL_S", "nan", "above 0, up to 3600"),
        ("P2PSHARE_SCTP_RTO_MIN_S", "-1", "above 0, up to 60"),
        ("P2PSHARE_HASH", "md5", "blake3, sha256"),
        ("P2PSHARE_COMPRESS_WHEN_AHEAD", "-1", "0 to 999"),
    ],
)
def test_a_value_out_of_bounds_names_the_variable_and_the_range(
    env: str, raw: str, says: str
) -> None:
    """A bad value is refused with the variable, the value and what it accepts."""
    with pytest.raises(ValueError, match=re.escape(f"{env}={raw}: must be")) as caught:
        Tuning.from_env({env: raw})
    assert says in str(caught.value)


def test_only_config_and_the_cli_read_the_environment() -> None:
    """No library module reads os.environ: knobs reach them through Tuning."""
    readers = sorted(
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "p2pshare").rglob("*.py")
        if re.search(r"os\.environ|getenv", path.read_text())
    )
    assert all(p == "p2pshare/config.py" or p.startswith("p2pshare/cli") for p in readers), readers
