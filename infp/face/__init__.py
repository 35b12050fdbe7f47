"""Face detection, named landmarks and the mouth measure, square crops, region masks and paste-back:
RGB uint8 (H, W, 3) images, (478, 2) landmarks."""

from infp.face.crop import (
    BoxSmoother,
    CropBox,
    crop,
    crop_box_from_face,
    crop_matrix,
    invert_affine,
    smooth_boxes,
    transform_points,
)
from infp.face.detect import Face, FaceDetector, choose_face, detect_face, detect_faces
from infp.face.landmarks import (
    FACE_OVAL,
    INNER_LIPS,
    LEFT_EYE,
    LEFT_EYEBROW,
    LEFT_IRIS,
    LIPS,
    NUM_LANDMARKS,
    RIGHT_EYE,
    RIGHT_EYEBROW,
    RIGHT_IRIS,
    interocular,
    mouth_opening,
)
from infp.face.masks import motion_input, region_mask
from infp.face.paste import paste_back

__all__ = [
    "FACE_OVAL", "INNER_LIPS", "LEFT_EYE", "LEFT_EYEBROW", "LEFT_IRIS", "LIPS", "RIGHT_EYE", "RIGHT_EYEBROW",
    "RIGHT_IRIS", "NUM_LANDMARKS", "BoxSmoother", "CropBox", "Face", "FaceDetector", "choose_face", "crop", "crop_box_from_face",
    "crop_matrix", "detect_face", "detect_faces", "interocular", "invert_affine", "motion_input", "mouth_opening", "paste_back", "region_mask",
    "smooth_boxes", "transform_points",
]
