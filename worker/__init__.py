"""Workers: the Celery app, the model runtime, Grad-CAM, overlays, and the training pipeline.

Nothing here knows about HTTP; jobs arrive as ids and leave as records in Redis.
"""
