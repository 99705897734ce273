"""Launch the radseg_edge node: ros2 launch radseg_edge_ros radseg.launch.py image:=/camera/image_raw \
checkpoint:=c-radio_v3-b vocab:=/path/vocab.safetensors (or export_dir:=..., params_file:=...)."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

ARGS = {
    "image": ("/camera/image_raw", "input image topic (sensor_msgs/Image, or CompressedImage with compressed:=true)"),
    "camera_info_topic": ("/camera/camera_info", "input camera_info topic (used with camera_info:=true)"),
    "namespace": ("", "node namespace"),
    "params_file": ("", "YAML parameter file (config/radseg.yaml); when set, the arguments below are ignored"),
    "backend": ("auto", "auto, torch, onnxruntime, tensorrt, torch-tensorrt"),
    "export_dir": ("", "folder written by `radseg-edge export`"),
    "checkpoint": ("", "RADIO checkpoint (torch backend)"),
    "vocab": ("", "vocabulary file from `radseg-edge vocab build`"),
    "classes": ("", "class names 'a, b, c'"),
    "device": ("auto", "cpu, cuda, cuda:1, ..."),
    "compressed": ("false", "subscribe sensor_msgs/CompressedImage on image/compressed"),
    "camera_info": ("false", "republish camera_info with each result"),
    "publish_confidence": ("false", "publish ~/confidence (32FC1)"),
}


def generate_launch_description() -> LaunchDescription:
    cfg = {k: LaunchConfiguration(k) for k in ARGS}
    remaps = [("image", cfg["image"]), ("image/compressed", [cfg["image"], "/compressed"]),
              ("camera_info", cfg["camera_info_topic"])]
    inline = {k: cfg[k] for k in ("backend", "export_dir", "checkpoint", "classes", "device")}
    inline.update({"vocab": [cfg["vocab"]], "compressed": cfg["compressed"], "camera_info": cfg["camera_info"],
                   "publish_confidence": cfg["publish_confidence"]})
    given = PythonExpression(["'", cfg["params_file"], "' != ''"])
    has_file, no_file = IfCondition(given), UnlessCondition(given)
    common = dict(package="radseg_edge_ros", executable="radseg_node", name="radseg_edge",
                  namespace=cfg["namespace"], remappings=remaps, output="screen")
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [Node(parameters=[cfg["params_file"]], condition=has_file, **common),
           Node(parameters=[inline], condition=no_file, **common)]
    )
