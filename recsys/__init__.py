"""RALM Feed's machine-learning library: pure numpy / torch / scikit-learn, no web code."""
