"""``python -m rap_assets.sample_corpus``: re-render the corpus from ``source/*.yaml``."""

from rap_assets.sample_corpus import build

if __name__ == "__main__":
    paths = build()
    print(f"wrote {len(paths)} files")
