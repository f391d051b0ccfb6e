"""AMI: following Asterisk's channels and queues live, and acting on them."""
