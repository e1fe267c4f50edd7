"""The build flow: named, ordered steps over one build folder per configuration.

* :class:`~bnnhw.flow.config.BuildConfig` — what a build is (model, folding, sharing, clock,
  board, simulator); :func:`~bnnhw.flow.config.build_root` — where all builds live (one root,
  ``$BNNHW_BUILD_ROOT`` or ``bnnhw --build-root``).
* :class:`~bnnhw.flow.build.Build` — one build folder: runs steps, skips current ones,
  records inputs, outputs, metrics and seconds in ``build.json``.
* :mod:`bnnhw.flow.steps` — the steps: ``check, golden, generate, simulate, firmware, synth,
  pnr, bitstream, report``.

``bnnhw simulate``, ``bnnhw firmware run``, the demo, the board builds and the benchmarks are
step lists over it, so that a change to a model, a configuration, bnnhw's sources or a tool
version rebuilds exactly what it affects, and nothing stale is ever reused.
"""

from .build import Build
from .config import BuildConfig, build_root
from .steps import ORDER, STEPS

__all__ = ["Build", "BuildConfig", "build_root", "STEPS", "ORDER"]
