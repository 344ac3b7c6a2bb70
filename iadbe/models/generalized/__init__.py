"""IADBE's generalised detectors: anomalib's methods with any timm CNN backbone.

anomalib 2.7 builds some detectors only for a fixed list of backbones (tables of names for the
decoder, the descriptor width, the flow scales). The modules here derive that architecture from
the backbone's timm ``feature_info`` (channels and stride of each stage) instead, and reuse
anomalib's losses, anomaly map generators and flow blocks. The registry names them in
``DetectorSpec.generalized``; ``iadbe.models.factory.choose_implementation`` picks them where
anomalib's own class cannot run with the chosen backbone here.
"""
