"""ecg-edge: the device side of the streaming 12-lead ECG monitor.

Stages, in the order of the stream (see DESIGN.md): ``sources`` -> ``dsp`` ->
``framer`` -> ``quality`` -> ``classify`` -> ``alerts`` -> ``bridge.publish``.
"""

__version__ = "0.1.0"
