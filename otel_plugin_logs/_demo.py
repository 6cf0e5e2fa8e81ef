"""`otel-plugin-logs demo` and `doctor` (work in progress)."""

from __future__ import annotations

import argparse
from typing import Any


def add_demo_parser(commands: Any, epilog: str) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the demo host with several plugins",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(handler=lambda args: 0)


def add_doctor_parser(commands: Any, epilog: str) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check the configuration",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.set_defaults(handler=lambda args: 0)
