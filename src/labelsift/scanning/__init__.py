"""The parts the scan loop (`labelsift.scan.scan`) is made of, one concern per module:

- `options`: what the caller asks for (`ScanOptions`) and what the run has done (`ScanProgress`,
  `Outcome`);
- `labelling`: one image probed and sent to the detector, as a record (`label_image`);
- `window`: the requests in flight and the answers waiting for their turn in source order;
- `budget`: the money held for requests in flight and spent on answers;
- `rules`: the stopping rules, fed outcomes in source order;
- `copies`: duplicates waiting for their first's record.
"""
