from __future__ import annotations

from webllm_build.cli import main

raise SystemExit(main())
