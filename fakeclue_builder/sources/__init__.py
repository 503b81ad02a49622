"""One module per upstream dataset; `base.build_source(spec, seed)` picks the class by `spec.kind`."""
