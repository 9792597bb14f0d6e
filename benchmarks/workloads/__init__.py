"""The workloads, each in the module that makes its data and its contenders.

Modules are imported on demand, so a worker for the parquet workload never
imports torch and a worker for a checkpoint load never imports pandas.
"""

from __future__ import annotations

import importlib

from ..trial import Workload

_MODULE_OF = {
    "dcp_full": "checkpoint",
    "dcp_partial": "checkpoint",
    "dcp_save": "save",
    "parquet": "parquet",
    "parquet_all": "parquet",
    "parquet_dataset": "parquet",
    "random_reads": "objects",
    "full_read": "objects",
    "small_objects": "objects",
    "throttle": "throttle",
}

WORKLOAD_KEYS = tuple(_MODULE_OF)
"""In the order the driver runs them and the report shows them."""


def get_workload(key: str) -> Workload:
    try:
        module_name = _MODULE_OF[key]
    except KeyError:
        raise KeyError(f"unknown workload {key!r}; choose from {', '.join(WORKLOAD_KEYS)}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    workload: Workload = module.WORKLOADS[key]
    return workload
