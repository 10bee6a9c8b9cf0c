"""python -m p2pshare"""

from __future__ import annotations

from p2pshare.cli import main

main()
