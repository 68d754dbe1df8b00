"""Model making: datasets (Kermany layout, MedMNIST, phantoms), training, evaluation, reports."""
