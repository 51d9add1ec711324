"""``imagelearn track VIDEO --query OBJECT.jpg``: follow one object through a video."""

from __future__ import annotations

import argparse

from imagelearn.cli.arguments import roi


def register(subparsers: argparse._SubParsersAction) -> None:
    track = subparsers.add_parser("track", help="find an object photo in every frame of a video")
    track.add_argument("video", help="a video file, or a folder of frames in name order")
    track.add_argument("--query", required=True, help="photo of the object")
    track.add_argument("--roi", type=roi, help="x,y,w,h: the object's part of the query photo")
    track.add_argument("--csv", help="per-frame boxes, confidence and homographies (CSV)")
    track.add_argument("--out", help="annotated video (.mp4, .avi) or animated GIF (.gif)")
    track.add_argument(
        "--truth", help="OTB groundtruth_rect.txt: print the success rate (IoU > 0.5)"
    )
    track.add_argument("--max-frames", type=int, help="stop after this many frames")
    track.add_argument("--detector", default="rootsift")
    track.add_argument("--min-inliers", type=int, default=10)
    track.add_argument("--fps", type=float, default=10.0, help="frame rate of --out")
    track.set_defaults(handler=run_track)


def run_track(arguments: argparse.Namespace) -> int:
    from imagelearn.core.images import load_image
    from imagelearn.core.progress import progress
    from imagelearn.retrieval.tracking import (
        ObjectTracker,
        annotate,
        read_frames,
        read_otb_boxes,
        success_rate,
        write_annotated,
        write_track_csv,
    )

    photo = load_image(arguments.query)
    if arguments.roi:
        x, y, width, height = arguments.roi
        photo = photo[max(0, y) : y + height, max(0, x) : x + width]
    tracker = ObjectTracker(arguments.detector, min_inliers=arguments.min_inliers).fit(photo)
    tracked, annotated = [], []
    frames = read_frames(arguments.video, arguments.max_frames)
    for number, frame in enumerate(progress(frames, "frames", unit="frame")):
        tracked.append(tracker.update(frame, number))
        if arguments.out:
            annotated.append(annotate(frame, tracked[-1]))
    found = sum(t.homography is not None for t in tracked)
    print(f"frames: {len(tracked)}")
    print(f"found: {found} ({found / max(1, len(tracked)):.1%})")
    if arguments.csv:
        print(f"csv: {write_track_csv(tracked, arguments.csv)}")
    if arguments.out and annotated:
        print(f"annotated: {write_annotated(annotated, arguments.out, arguments.fps)}")
    if arguments.truth:
        truth = read_otb_boxes(arguments.truth)
        print(f"success rate (IoU > 0.5): {success_rate([t.box for t in tracked], truth):.3f}")
    return 0 if found else 1
