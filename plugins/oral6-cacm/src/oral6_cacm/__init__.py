"""CACM (Kaur, Kiciman, Sharma, ICLR 2023): attribute-aware independence constraints for oral6."""

__version__ = "0.1.0"
