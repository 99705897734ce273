"""``ros2 run radseg_edge_ros radseg_node``: starts radseg_edge.ros2.node."""

import sys


def main(args=None) -> int:
    try:
        from radseg_edge.ros2.node import main as node_main
    except ImportError as exc:
        print(f"error: the radseg-edge Python package is not importable ({exc}): pip install radseg-edge in the "
              "Python environment ROS 2 uses (see docs/ros2.md)", file=sys.stderr)
        return 1
    return node_main(args)


if __name__ == "__main__":
    sys.exit(main())
