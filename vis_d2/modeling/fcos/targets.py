"""FCOS locations and target assignment (sizes of interest, centre sampling, min-area tie-break)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from detectron2.structures import Instances

__all__ = [
    "compute_locations",
    "level_size_ranges",
    "FCOSTargets",
    "assign_targets",
    "centerness_targets",
]

INF = 1e8


def compute_locations(
    height: int, width: int, stride: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Centres of the cells of an (height, width) map at ``stride``: (height·width, 2) as (x, y)
    in input pixels, row-major; cell (i, j) → (j·s + s//2, i·s + s//2)."""
    xs = torch.arange(width, dtype=torch.float32, device=device) * stride + stride // 2
    ys = torch.arange(height, dtype=torch.float32, device=device) * stride + stride // 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((x.reshape(-1), y.reshape(-1)), dim=1)


def level_size_ranges(sizes_of_interest: list[float]) -> list[tuple[float, float]]:
    """[64, 128, 256, 512] → [(-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)]."""
    bounds = [-1.0, *[float(s) for s in sizes_of_interest], INF]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass
class FCOSTargets:
    """Targets of every location of every image, flattened level-first (level, image, y, x).

    labels: (L,) class index, ``num_classes`` for background. reg: (L, 4) ltrb distances to the
    assigned box in units of the level's stride. gt_inds: (L,) index into the concatenation of
    all images' GT instances, -1 for background. im_inds, levels: (L,) image and level index;
    loc_inds: (L,) row-major index of the cell in its level's H_l·W_l map; locations: (L, 2)
    (x, y) in input pixels; strides: (L,).
    """

    labels: torch.Tensor
    reg: torch.Tensor
    gt_inds: torch.Tensor
    im_inds: torch.Tensor
    levels: torch.Tensor
    loc_inds: torch.Tensor
    locations: torch.Tensor
    strides: torch.Tensor

    def positive(self, num_classes: int) -> torch.Tensor:
        return torch.nonzero(self.labels != num_classes).squeeze(1)


def _assign_image(
    locations: torch.Tensor,
    strides: torch.Tensor,
    ranges: torch.Tensor,
    gt: Instances,
    num_classes: int,
    center_sample: bool,
    radius: float,
):
    """Per-image assignment over all levels' locations (M); returns labels, ltrb (px), gt index."""
    num_loc = locations.shape[0]
    boxes = gt.gt_boxes.tensor
    if boxes.numel() == 0:
        return (
            torch.full((num_loc,), num_classes, dtype=torch.int64, device=locations.device),
            locations.new_zeros(num_loc, 4),
            torch.full((num_loc,), -1, dtype=torch.int64, device=locations.device),
        )
    x, y = locations[:, 0, None], locations[:, 1, None]
    ltrb = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y), dim=2)
    if center_sample:
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        r = strides[:, None] * radius
        x0 = torch.maximum(cx - r, boxes[:, 0])
        y0 = torch.maximum(cy - r, boxes[:, 1])
        x1 = torch.minimum(cx + r, boxes[:, 2])
        y1 = torch.minimum(cy + r, boxes[:, 3])
        inside = torch.stack((x - x0, y - y0, x1 - x, y1 - y), dim=2).min(dim=2).values > 0
    else:
        inside = ltrb.min(dim=2).values > 0
    max_dist = ltrb.max(dim=2).values
    cared = (max_dist >= ranges[:, :1]) & (max_dist <= ranges[:, 1:])
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(num_loc, -1)
    area = area.masked_fill(~(inside & cared), INF)
    min_area, gt_ind = area.min(dim=1)
    background = min_area == INF
    labels = gt.gt_classes[gt_ind].masked_fill(background, num_classes)
    reg = ltrb[torch.arange(num_loc, device=locations.device), gt_ind]
    return labels, reg, gt_ind.masked_fill(background, -1)


def assign_targets(
    locations: list[torch.Tensor],
    strides: list[int],
    size_ranges: list[tuple[float, float]],
    gt_instances: list[Instances],
    num_classes: int,
    center_sample: bool = True,
    pos_radius: float = 1.5,
) -> FCOSTargets:
    """Assign every location of every level of every image to a GT box or to background.

    ``locations[l]``: (HW_l, 2) from :func:`compute_locations`. A location is positive for a GT
    when it lies strictly inside the GT box (or, with centre sampling, inside the box of
    ``pos_radius`` strides around the GT centre, clipped to the GT box) and its largest ltrb
    distance lies within the level's size range (inclusive); ties go to the smallest box.
    """
    device = locations[0].device
    level_of = torch.cat(
        [
            torch.full((len(loc),), i, dtype=torch.int64, device=device)
            for i, loc in enumerate(locations)
        ]
    )
    all_loc = torch.cat(locations)
    stride_of = torch.tensor(strides, dtype=torch.float32, device=device)[level_of]
    ranges = torch.tensor(size_ranges, dtype=torch.float32, device=device)[level_of]
    labels, reg, gt_inds, offset = [], [], [], 0
    for gt in gt_instances:
        lab, ltrb, ind = _assign_image(
            all_loc, stride_of, ranges, gt, num_classes, center_sample, pos_radius
        )
        labels.append(lab)
        reg.append(ltrb / stride_of[:, None])
        gt_inds.append(torch.where(ind >= 0, ind + offset, ind))
        offset += len(gt)
    sizes = [len(loc) for loc in locations]
    num_images = len(gt_instances)

    def level_first(t: torch.Tensor) -> torch.Tensor:
        # (num_images, M, ...) -> for each level, every image's locations of that level
        return torch.cat([chunk.flatten(0, 1) for chunk in t.split(sizes, dim=1)])

    def per_image(t: torch.Tensor) -> torch.Tensor:
        return level_first(t[None].expand(num_images, *t.shape))

    return FCOSTargets(
        labels=level_first(torch.stack(labels)),
        reg=level_first(torch.stack(reg)),
        gt_inds=level_first(torch.stack(gt_inds)),
        im_inds=level_first(
            torch.arange(num_images, device=device)[:, None].expand(num_images, len(all_loc))
        ),
        levels=per_image(level_of),
        loc_inds=per_image(torch.cat([torch.arange(n, device=device) for n in sizes])),
        locations=per_image(all_loc),
        strides=per_image(stride_of),
    )


def centerness_targets(reg: torch.Tensor) -> torch.Tensor:
    """sqrt(min(l, r)/max(l, r) · min(t, b)/max(t, b)) for (N, 4) ltrb targets of positives."""
    lr, tb = reg[:, [0, 2]], reg[:, [1, 3]]
    ratio_lr = lr.min(dim=1).values / lr.max(dim=1).values
    ratio_tb = tb.min(dim=1).values / tb.max(dim=1).values
    return torch.sqrt(ratio_lr * ratio_tb)
