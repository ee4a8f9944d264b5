"""The central station: ``ecg-bridge station`` (see :mod:`bridge.station.server`)."""
