"""Copy trading over REST: strategies, subscriptions and their settings, copy events, orders and links."""
