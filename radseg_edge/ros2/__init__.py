"""ROS 2 integration: plain, ROS-free modules plus a thin rclpy node.

- :mod:`.types`: rosbags typestores (humble, jazzy) with vision_msgs/LabelInfo registered, and the
  message namespaces the converters build messages with (rosbags dataclasses or rclpy classes).
- :mod:`.convert`: sensor_msgs/Image and CompressedImage <-> arrays, labels (mono8 / mono16),
  overlay (rgb8), confidence (32FC1), LabelInfo.
- :mod:`.params`: node parameters and QoS profiles, parsed and validated without ROS.
- :mod:`.diagnostics`: per-stage timings -> diagnostic_msgs/DiagnosticArray.
- :mod:`.processor`: one image message -> output messages with per-stage timings (node, bag, benchmark).
- :mod:`.bag`: rosbag2 (MCAP / sqlite3) in, rosbag2 out (``radseg-edge bag``).
- :mod:`.node`: the rclpy node (imports rclpy lazily; needs a ROS 2 installation).
"""
