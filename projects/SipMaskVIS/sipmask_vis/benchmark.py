"""SipMask-VIS's benchmark adapter (``tools/benchmark.py``): SipMask's, plus the track branch
and the tracker."""

from __future__ import annotations

from sipmask.benchmark import SipMaskAdapter

from vis_d2.benchmark import Probe, register_benchmark_adapter

from .sipmask import SipMaskVIS

__all__ = ["SipMaskVISAdapter"]


@register_benchmark_adapter("SipMaskVIS")
class SipMaskVISAdapter(SipMaskAdapter):
    label = "SipMask-VIS"
    layout = [
        *[row for row in SipMaskAdapter.layout if row[0] not in ("mask/rescoring", "other")],
        ("track", "track branch"),
        ("track/embeddings", "- embedding map (dense)"),
        ("tracker", "tracker"),
        ("other", "other (preprocessing, glue)"),
    ]
    head_groups = ("mask", "track", "tracker")

    def probes(self, model: SipMaskVIS) -> list[Probe]:
        """SipMask's parts of :meth:`SipMaskVIS.inference_frame` (``backbone``, ``fcos/head``,
        ``mask/bases``, ``fcos/postprocess``, ``mask/assemble``), ``track/embeddings``,
        ``tracker`` and ``other``."""
        return [
            *super().probes(model),
            Probe(model.track_head, "track/embeddings", "other"),
            Probe(model.tracker, "tracker", "other", "update"),
        ]
