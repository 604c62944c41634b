"""One bootstrap per role (``api``, ``worker``, ``cli``): each picks the concrete backends its
role needs and hands out services typed by the core's ports; ``shared`` holds what they share."""
