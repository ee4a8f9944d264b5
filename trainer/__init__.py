"""ecg-train: the offline side. Records, two-phase training, export, scores."""
