"""What the bits of a result depend on besides the data and the options: the library
versions and the CPU of the processes that compute the partial sums.

The reproducibility promise ("Reproducible to the bit" in the README) holds for the same
library versions and CPU type. This module says which those were, so that ``model.json``
records them (an audit can tell whether a retrain should give the same bits), a checkpoint
resumed under other versions says that its last bits may differ, and a cluster whose
workers differ says so before it trains. Pure functions; nothing here knows about Dask.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform

KEYS = ("lrdask", "python", "numpy", "pyarrow", "blas", "cpu")


@functools.lru_cache(maxsize=1)
def describe() -> dict[str, str]:
    """{name: version} for this process: lrdask, Python, NumPy, pyarrow (it decodes the
    data), the BLAS NumPy calls (``threadpoolctl``: library, version, kernel
    architecture; the one in NumPy's own directory when there is one, else every BLAS
    loaded) and the CPU (machine and model name)."""
    import numpy
    import pyarrow
    from threadpoolctl import threadpool_info

    from lrdask import __version__

    found = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    # NumPy's own BLAS (a wheel ships it in numpy.libs/): the one the kernels call. Other
    # BLAS libraries (scipy's, in a process that imported scipy) would make the
    # description depend on what else the process happened to load.
    home = os.path.dirname(numpy.__file__)
    own = [i for i in found if os.path.dirname(i.get("filepath", "")).startswith(home)]
    blas = sorted(
        f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')})"
        for info in own or found
    )
    return {
        "lrdask": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "blas": "; ".join(blas) or "none found",
        "cpu": _cpu(),
    }


def _cpu() -> str:
    model = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", errors="replace") as lines:
        model = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
            model,
        )
    return f"{platform.machine()} {model}".strip()


def differences(a: dict, b: dict) -> list[str]:
    """'name: a-value vs b-value' for each key whose values differ (a missing key counts
    as "unknown")."""
    return [
        f"{key}: {a.get(key, 'unknown')} vs {b.get(key, 'unknown')}"
        for key in KEYS
        if a.get(key, "unknown") != b.get(key, "unknown")
    ]


def distinct(descriptions: list[dict]) -> list[dict]:
    """The different descriptions among ``descriptions``, in a fixed order."""
    seen = {tuple(sorted(d.items())): d for d in descriptions}
    return [seen[key] for key in sorted(seen)]


def mixed_workers_message(workers: list[dict]) -> str:
    """A warning when the workers differ (empty when they agree): then which worker folds
    which block changes the last bits of the result."""
    kinds = distinct(workers)
    if len(kinds) < 2:
        return ""
    return (
        f"the workers run {len(kinds)} different environments "
        f"({'; '.join(differences(kinds[0], kinds[1]))}): the result's last bits then depend "
        "on which worker folds which block, so reruns may differ; use the same library "
        "versions and CPU type on every worker for a reproducible model"
    )
