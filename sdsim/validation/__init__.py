"""`sdsim validate`: run a component on a device and compare each call with its prediction."""
