"""The HTTP gateway: validates uploads, stores them, enqueues job ids, serves results.

It never imports TensorFlow or Keras; a test asserts so.
"""
