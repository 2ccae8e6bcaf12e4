// The page's visible, focusable controls with the name a screen reader would give them.
() => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter((el) => el.checkVisibility() && el.tabIndex >= 0 && !el.disabled)
  .map((el) => ({ id: el.id, tag: el.tagName, name: (el.labels && el.labels.length ? el.labels[0].innerText
     : (el.getAttribute('aria-label') || el.innerText || el.value || '')).trim() }))
