"""`labelsift scan --engine ray`: the scan on a Ray cluster (install with `pip install 'labelsift[ray]'`).

Imported only when the Ray engine is asked for, so the base install never imports Ray.
`driver.ray_scan` lists and feeds; `actor.BatchLabeller` labels a batch with the plain scan's
`label_image` and writes it as one content-named shard (`shards`); `control` holds the spending
limits and the shared request rate.
"""
