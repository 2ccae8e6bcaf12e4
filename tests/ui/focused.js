// The focused element as 'TAG|id-or-name'.
() => { const e = document.activeElement;
  return e.tagName + '|' + (e.id || e.innerText || e.getAttribute('aria-label') || '').trim(); }
