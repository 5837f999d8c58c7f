# Reads a DFXML document with Python's own XML parser (independent of
# amber's writer) and prints, as one JSON object, each volume's label
# (ftype_str), layer digest and files (exact name bytes in base64, after
# undoing amber's escape: \\ and \xNN; name_type; sha256), and the
# top-level fileobjects (the archive file).
import base64, json, re, sys
import xml.etree.ElementTree as ET

NS = '{http://www.forensicswiki.org/wiki/Category:Digital_Forensics_XML}'

def unescape(s):
    return re.sub(rb'\\\\|\\x([0-9a-f]{2})',
                  lambda m: b'\\' if m.group(0) == b'\\\\' else bytes([int(m.group(1), 16)]),
                  s.encode('utf-8'))

def fileobject(fo):
    name = fo.find(NS + 'filename').text or ''
    h = fo.find(NS + "hashdigest[@type='sha256']")
    nt = fo.find(NS + 'name_type')
    lt = fo.find(NS + 'link_target')
    return {'path_b64': base64.b64encode(unescape(name)).decode(),
            'type': nt.text if nt is not None else '',
            'sha256': h.text if h is not None else '',
            'link_b64': base64.b64encode(unescape(lt.text or '')).decode() if lt is not None else ''}

root = ET.parse(sys.argv[1]).getroot()
out = {'volumes': [], 'files': []}
for v in root.findall(NS + 'volume'):
    d = v.find(NS + 'byte_runs/' + NS + 'byte_run/' + NS + "hashdigest[@type='sha256']")
    out['volumes'].append({'label': v.find(NS + 'ftype_str').text,
                           'digest': d.text if d is not None else '',
                           'files': [fileobject(fo) for fo in v.findall(NS + 'fileobject')]})
for fo in root.findall(NS + 'fileobject'):
    out['files'].append(fileobject(fo) | {'md5': (fo.findtext(NS + "hashdigest[@type='md5']") or ''),
                                         'sha1': (fo.findtext(NS + "hashdigest[@type='sha1']") or '')})
json.dump(out, sys.stdout)
