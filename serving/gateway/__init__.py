"""HTTP gateway: the model server for browsers and HTTP tools, built on the edge client.

It never imports TensorFlow: it talks gRPC to TF Serving or the embedded server through
``client.SegmentationClient``. ``python -m serving gateway --target HOST:PORT``; the app is
``app.create_app(GatewaySettings(...))``.
"""
