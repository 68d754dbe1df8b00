"""Workers: the Celery app, the model runtime, Grad-CAM, overlays, and the training pipeline.

Nothing here knows about HTTP; jobs arrive as ids and leave as records in Redis.
"""

import os

# JAX's GPU client takes 75 % of the card's memory when it starts unless told otherwise, so a
# second process on the card (another worker, or the benchmark measuring the model beside one)
# fails its first allocation. A worker needs a few hundred MiB. Set here, before anything in
# the package can start a JAX client; an operator's own setting wins.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
