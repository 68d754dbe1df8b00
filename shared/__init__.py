"""Code shared by the gateway and the workers: settings, wire schemas, Redis stores, image intake.

Nothing here may import TensorFlow, Keras or FastAPI: the gateway image stays slim and both
sides agree on one definition of every contract.
"""
