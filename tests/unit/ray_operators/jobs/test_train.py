"""The train stage's settings that need no cluster: the GPU setting degrades to CPU."""

from __future__ import annotations


def test_gpu_setting_degrades_to_cpu_when_the_cluster_has_none(monkeypatch):
    import ray

    from ray_operators.jobs.train import resolve_use_gpu

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert resolve_use_gpu("auto") is False
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 1.0})
    assert resolve_use_gpu("auto") is True
    assert resolve_use_gpu(False) is False and resolve_use_gpu(True) is True
