"""Texts and the encoder the LangChain and LlamaIndex tests share."""

from __future__ import annotations

from csrv2_vdb import Backbone, CSRv2Encoder
from csrv2_vdb.head import pretrained_head

TEXTS = [
    "Basal cell skin cancer is usually treated with surgery to remove the cancer.",
    "Mohs surgery removes skin cancer one thin layer at a time.",
    "Radiation therapy may treat skin cancer when surgery is not an option.",
    "Melanoma can spread to the lymph nodes; a sentinel lymph node biopsy checks for this.",
    "Chemotherapy drugs travel through the bloodstream to kill cancer cells.",
    "Lung cancer screening uses low-dose CT scans for people who smoked.",
    "Immunotherapy helps the immune system find and attack cancer cells.",
    "Ask your care team about side effects of treatment and how to manage them.",
]
TOPICS = ["skin", "skin", "skin", "skin", "therapy", "lung", "therapy", "care"]
_shared: dict = {}


def shared_encoder() -> CSRv2Encoder:
    """One encoder for the framework tests (real backbone, a shipped head), built once per session."""
    if "encoder" not in _shared:
        _shared["encoder"] = CSRv2Encoder(Backbone(), pretrained_head("minilm-medical-csrv2-k8"), k=32)
    return _shared["encoder"]
