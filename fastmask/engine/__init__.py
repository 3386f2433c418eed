"""The dataset engine: manifest -> shards -> executor (local | dask) -> Parquet sink, with resume.

It knows nothing about masks: it runs any job over any list of items.
"""
