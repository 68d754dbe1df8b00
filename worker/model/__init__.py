"""The model core that serving, training and audit share: architecture, artifact, runtime,
Grad-CAM."""
