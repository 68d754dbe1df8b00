"""Workers, by concern; imports go only downward (serving, training, audit -> model):

- `worker.serving`: the Celery app, micro-batching, the Redis transport, the Celery-free batch
  pipeline, recovery and time limits. Nothing here knows about HTTP.
- `worker.model`: the CNN's architecture, the versioned artifact, the runtime that predicts and
  explains in one compiled call, Grad-CAM.
- `worker.training`: datasets, training, evaluation, classification metrics, reports.
- `worker.audit`: the Grad-CAM audit, the randomisation sanity check, the shortcut-bias study.
- `worker.phantoms`: synthetic radiographs with ground-truth masks.

The serving images install only what `worker.serving` and `worker.model` need (`.[worker]`);
training and audit need `.[training]` on top.
"""
