"""Where candidates come from: replays now; manifests, ONNX folders and catalogues later."""
