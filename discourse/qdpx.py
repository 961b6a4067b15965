"""REFI-QDA exchange: .qdpx projects and .qdc codebooks, both ways.

REFI-QDA (www.qdasoftware.org) is the exchange format of NVivo, ATLAS.ti,
MAXQDA, QualCoder and others. A ``.qdpx`` is a zip holding ``project.qde``
(XML in namespace ``urn:QDA-XML:project:1.0``) and a ``sources/`` folder with
each text source as a UTF-8 ``<guid>.txt`` (``plainTextPath="internal://..."``).
Text selections are ``startPosition``/``endPosition`` Unicode code point
offsets into that plain text, end exclusive (``text[start:end]``). A ``.qdc`` is
a codebook alone (namespace ``urn:QDA-XML:codebook:1.0``).

Rules this module follows (see docs/qda-exchange.md):

* Nesting: a code's *path* is the names of its ancestors and itself joined
  with ``/`` (``Discourses/consumer``); folders (``isCodable="false"``) count
  in the path but are never codes themselves. As a codebook id the path is
  made valid by :func:`slug`: lower case, accents dropped, every run of other
  characters ``_`` (``Discourses/Consumer choice`` -> ``discourses_consumer_choice``).
* Mapping QDA codes to codebook ids (``import_qdpx``): a map key matches a
  code's path, else its name (case-insensitive; a name key applies to every
  code of that name). With no map, a code maps to the codebook id that equals
  its name or its slugged path (case-insensitive).
* Line ends: positions index the text as decoded (a ``\\r\\n`` is two code
  points, as NVivo, MAXQDA and QualCoder count it), except in projects whose
  ``origin`` is ATLAS.ti, which counts ``\\r\\n`` as one: their text is read
  with ``\\n`` line ends. Exported texts always use ``\\n`` so every tool agrees.
* Role and trust of an imported selection come from the case variables named
  ``role`` and ``trust`` (any capitalisation) of the most specific case that
  contains it (:func:`selection_metadata`). A coded span that runs over two
  speakers' turns (found by their labels) is kept as selected and warned of.
* Reporting: each QDA code used in a selection that the map does not cover
  is named once, with how many selections carry it.

The code is in three modules: ``qdpx_xml`` (shared pieces), ``qdpx_read`` and
``qdpx_write``; this one gathers their public names.
"""

from .qdpx_read import (  # noqa: F401
    QdpxProject,
    code_coverage,
    coded_from_project,
    extract_sources,
    import_qdc,
    import_qdpx,
    read_code_map,
    read_qdpx,
    resolve_codes,
    selection_metadata,
)
from .qdpx_write import export_qdc, export_qdpx  # noqa: F401
from .qdpx_xml import (  # noqa: F401
    CODE_COLUMNS,
    CODEBOOK_NS,
    CODING_COLUMNS,
    DEFAULT_CREATED,
    GUID_NAMESPACE,
    MAX_SOURCE_BYTES,
    MODEL_USER,
    PALETTE,
    PROJECT_NS,
    codebook_qdc_bytes,
    creation_time,
    decode_source,
    describe_code,
    flatten_codes,
    guid_for,
    norm_guid,
    parse_description,
    slug,
)
