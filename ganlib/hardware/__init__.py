"""The machine a run is on: what it is, and which speed settings are fastest on it, measured.

    machine.py  the CPU model and the flags that decide bf16 speed (avx512_bf16, amx), or the GPU
    probe.py    time candidate settings interleaved, keep the fastest, cache the choice per machine
    device.py   a device setting -> a torch device, and the check that refuses an absent one before any work
"""
