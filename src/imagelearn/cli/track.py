"""``imagelearn track video VIDEO --query OBJECT.jpg``: follow one object through a video."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import roi
from imagelearn.cli.verbs import add_verbs_with_default


def register(subparsers: argparse._SubParsersAction) -> None:
    verbs = add_verbs_with_default(
        subparsers, "track", help="find an object photo in every frame of a video", default="video"
    )
    video = verbs.add_parser(
        "video",
        help="follow the object through one video (or a folder of frames)",
    )
    video.add_argument("video", help="a video file, or a folder of frames in name order")
    video.add_argument("--query", required=True, help="photo of the object")
    video.add_argument("--roi", type=roi, help="x,y,w,h: the object's part of the query photo")
    video.add_argument("--csv", help="per-frame boxes, confidence and homographies (CSV)")
    video.add_argument("--out", help="annotated video (.mp4, .avi) or animated GIF (.gif)")
    video.add_argument(
        "--truth", help="OTB groundtruth_rect.txt: print the success rate (IoU > 0.5)"
    )
    video.add_argument("--max-frames", type=int, help="stop after this many frames (default: all)")
    video.add_argument(
        "--detector", default="rootsift", help="local feature detector (default %(default)s)"
    )
    video.add_argument(
        "--min-inliers",
        type=int,
        default=10,
        help="inliers needed to accept a frame's homography (default %(default)s)",
    )
    video.add_argument(
        "--fps", type=float, default=10.0, help="frame rate of --out (default %(default)s)"
    )
    video.set_defaults(handler=run_video)


def run_video(arguments: argparse.Namespace) -> int:
    from imagelearn.tracking import ObjectTracker, video_run

    result = video_run(
        arguments.video,
        arguments.query,
        ObjectTracker(arguments.detector, min_inliers=arguments.min_inliers),
        roi=arguments.roi,
        csv=arguments.csv,
        out=arguments.out,
        truth=arguments.truth,
        max_frames=arguments.max_frames,
        fps=arguments.fps,
    )
    for source, reason in result.skipped:
        print(f"skipped: {source}: {reason}")
    print(f"frames: {len(result.frames)}")
    print(f"found: {result.n_found} ({result.n_found / max(1, len(result.frames)):.1%})")
    if result.csv is not None:
        print(f"csv: {result.csv}")
    if result.out is not None:
        print(f"annotated: {result.out}")
    if result.success_rate is not None:
        print(f"success rate (IoU > 0.5): {result.success_rate:.3f}")
    return 0 if result.n_found else 1
