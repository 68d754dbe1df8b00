"""Serving: jobs arrive as ids through the broker and leave as records and blobs in the store."""
