"""Materialize one artist partition in a process of its own, configured from the environment,
so that a test can kill it part-way through. Usage: python -m rap_assets_tests.run_partition KEY"""

from __future__ import annotations

import sys

import dagster as dg

from rap_assets.assets import ARTIST_ASSETS
from rap_assets.definitions import build_resources

if __name__ == "__main__":
    key = sys.argv[1]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("artists", [key])
        result = dg.materialize(
            ARTIST_ASSETS,
            partition_key=key,
            instance=instance,
            resources=build_resources(),
            run_config={"ops": {"genius_lyrics": {"config": {"batch_size": 2}}}},
        )
    sys.exit(0 if result.success else 1)
