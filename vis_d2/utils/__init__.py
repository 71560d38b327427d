"""Helpers for running models outside the trainer. Import the modules themselves, e.g.
``vis_d2.utils.video_io`` (frame readers and writers), ``vis_d2.utils.visualizer``
(track-coloured overlays), ``vis_d2.utils.predictor`` (config, model and per-frame input
set-up); streamed YouTube-VIS results are ``vis_d2.evaluation.TrackResults``."""
