"""ROS 2 package wrapper: the node is radseg_edge.ros2.node (pip install radseg-edge)."""
